#!/usr/bin/env python3
"""Regenerates data/golden/audit-chain.json: an audit chain (PROTOCOL.md §12.5) hashed by an
implementation independent of our Rust code (hashlib, the encoding written from the spec).
`tests/golden_vectors.rs` (`an_independently_hashed_audit_chain_verifies`) checks the Rust
hashes against it.

Usage:  python3 data/golden/audit_chain.py   (standard library only; deterministic)
"""

import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "audit-chain.json")
MESH = "01JAUDITMESHVECTOR0000000"


def f(s):
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def record_hash(mesh_id, r):
    c = f("claudemesh-audit-v1") + f(mesh_id)
    c += struct.pack(">Q", r["seq"]) + struct.pack(">q", r["at_ms"])
    c += f(r["event"]) + f(r["actor_member_id"]) + f(r["actor_name"])
    fields = sorted(r["payload"].items(), key=lambda kv: kv[0].encode("utf-8"))
    c += struct.pack(">I", len(fields))
    for k, v in fields:
        c += f(k) + f(v)
    c += bytes.fromhex(r["prev_hash"])
    return hashlib.sha256(c).hexdigest()


records = [
    dict(event="mesh.created", actor_member_id="m-owner", actor_name="alice",
         payload={"name": "team", "slug": "team", "groupBodies": "sealed"}),
    dict(event="member.joined", actor_member_id="m-bob", actor_name="Bøb ✓",
         payload={"memberId": "m-bob", "role": "member", "inviteId": "inv1"}),
    dict(event="state.set", actor_member_id="m-owner", actor_name="alice",
         payload={"key": "déploy|target", "bytes": "17"}),
    dict(event="file.deleted", actor_member_id="", actor_name="broker", payload={}),
]
prev = "0" * 64
for i, r in enumerate(records):
    r["seq"] = i + 1
    r["at_ms"] = 1_700_000_000_000 + 1000 * i
    r["prev_hash"] = prev
    r["hash"] = record_hash(MESH, r)
    prev = r["hash"]

with open(OUT, "w", encoding="utf-8") as out:
    json.dump({"mesh_id": MESH, "records": records}, out, ensure_ascii=False, indent=2)
    out.write("\n")
print(f"wrote {OUT}")
