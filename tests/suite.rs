//! The end-to-end suite: one test binary for every area, so a build links it once (each of the
//! former per-area binaries carried all of claudemesh and its engines, and together they filled
//! the disk of a CI machine). Each module is one area's file next to this one; run one area with
//! `cargo test --release --test suite -- messaging::`.

mod common;

mod admission;
mod agent;
mod approvals;
mod audit;
mod bans;
mod bounds;
mod claims;
mod client_side;
mod clock;
mod command_line;
mod crash;
mod crash_repeated;
mod cron;
mod dashboard;
mod deployments;
mod files;
mod golden_vectors;
mod grants;
mod graph;
mod hello;
mod hostile;
mod invites;
mod join;
mod keys;
mod lan;
mod lists;
mod mcp;
mod membership;
mod mesh;
mod messaging;
mod original_client;
mod peer_files;
mod perms;
mod profile;
mod quotas;
mod revocation;
mod service;
mod shared_data;
mod shared_tools;
mod signed_requests;
mod skills;
mod sql;
mod stats;
mod telegram;
mod tls;
mod upload_slots;
mod vault;
mod vectors;
mod watches;
mod webhooks;
