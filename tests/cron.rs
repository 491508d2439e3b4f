//! Cron reminders under hostile expressions (issue 10, item 9): steps, ranges and numbers built
//! to overflow, absurd lengths and never-firing dates are refused with a sentence, the broker
//! stays up, and a valid expression still fires.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

use claudemesh::protocol::{ServerMessage, time};

#[tokio::test(flavor = "multi_thread")]
async fn hostile_cron_expressions_are_refused_and_a_valid_one_fires() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, _bob) = alice_and_bob(&broker);
    let alice_client = alice.client().await;

    // A valid expression: every minute. Scheduled first, so its minute runs during the rest.
    let every_minute = alice.json(&["remind", "tick", "--cron", "* * * * *", "--json"]);
    assert_eq!(every_minute["cron"], "* * * * *");

    let long = format!("{} * * * *", "1,".repeat(5_000) + "1");
    let hostile: &[(&str, &str)] = &[
        ("5/4294967295 * * * *", "minute field \"5/4294967295\""),
        ("*/4294967296 * * * *", "minute field"),
        ("0-4294967295 * * * *", "minute field"),
        ("99999999999999999999 * * * *", "minute field"),
        ("* */65536 * * *", "hour field"),
        ("* * * * 5#9", "day-of-week field"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@reboot", "unknown macro"),
        ("* * * * * * *", "expected 5 fields"),
        (long.as_str(), "longer than 256 characters"),
    ];
    for (expr, says) in hostile {
        let out = alice.run(&["remind", "x", "--cron", expr]);
        assert_eq!(
            out.code, 1,
            "`--cron {expr}` was not refused: {}",
            out.stdout
        );
        assert!(
            out.stderr.contains("cron: ") && out.stderr.contains(says),
            "`--cron {expr}`: {}",
            out.stderr
        );
    }
    // The broker is up and serving everyone.
    bystanders.exchange(3).await;
    assert_eq!(
        http_get(&format!("{}/health", broker.http_url()))
            .await
            .status,
        200
    );
    let listed = alice.json(&["remind", "list", "--json"]);
    assert_eq!(listed["messages"].as_array().map(Vec::len), Some(1));

    // The valid one fires on the next whole minute (UTC), and again on the one after: each
    // firing arms the next.
    let mut fired = Vec::new();
    for n in ["first", "second"] {
        let deadline = Instant::now() + Duration::from_secs(75);
        loop {
            let push = tokio::time::timeout_at(deadline.into(), alice_client.next_push())
                .await
                .unwrap_or_else(|_| {
                    panic!("the every-minute reminder's {n} firing did not come within 75 s")
                })
                .expect("alice's connection is open");
            if let ServerMessage::Push(p) = push
                && p.subtype.as_deref() == Some("reminder")
            {
                alice_client.ack(&p.message_id).unwrap();
                fired.push(p.message_id.clone());
                break;
            }
        }
        // The broker moves the schedule on just after queueing the firing.
        let count = fired.len();
        eventually(
            &format!("the reminder re-armed after its {n} firing"),
            || async {
                let listed = alice.json(&["remind", "list", "--json"]);
                let armed = &listed["messages"][0];
                // ISO-8601 in one format: text order is time order.
                let now = time::iso(time::now_ms());
                armed["firedCount"] == count
                    && armed["deliverAt"]
                        .as_str()
                        .is_some_and(|at| at > now.as_str())
            },
        )
        .await;
    }
    assert_ne!(fired[0], fired[1], "two firings, two messages");
    bystanders.exchange(3).await;
}

/// Rows of the schedule index that do not match a reminder (a store damaged by hand or by a
/// crash in an older version) are looked at again a second later, not in a busy loop: one whose
/// reminder is gone, and one naming a cron reminder at another time than its own, which fires
/// it neither early nor again and again. A real reminder still fires, and SIGTERM stops the
/// broker without the 10 s grace given to stuck tasks.
#[tokio::test(flavor = "multi_thread")]
async fn dangling_schedule_rows_neither_spin_the_scheduler_nor_hold_up_shutdown() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mesh_id = alice.entry().mesh_id;
    let hourly = alice.json(&[
        "remind",
        "hourly",
        "--cron",
        "0 * * * *",
        "--to",
        "bob",
        "--json",
    ]);
    let hourly_id = hourly["scheduledId"]
        .as_str()
        .expect("scheduledId")
        .to_string();
    broker.terminate();
    {
        const SCHEDULE_DUE: redb::TableDefinition<(u64, &str, &str), ()> =
            redb::TableDefinition::new("schedule_due");
        let db = redb::Database::open(broker.data_dir().join("mesh.redb")).expect("mesh.redb");
        let tx = db.begin_write().unwrap();
        {
            let mut due = tx.open_table(SCHEDULE_DUE).unwrap();
            due.insert((1_000, mesh_id.as_str(), "gone"), ()).unwrap();
            due.insert((2_000, mesh_id.as_str(), hourly_id.as_str()), ())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    broker.restart();

    alice.ok(&["remind", "still on time", "--in", "1s", "--to", "bob"]);
    eventually("bob's reminder", || async {
        bob.ok(&["inbox", "--json"]).contains("still on time")
    })
    .await;
    let listed = alice.json(&["remind", "list", "--json"]);
    let hourly = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == hourly_id.as_str())
        .expect("the hourly reminder is still listed");
    assert!(
        hourly["firedCount"].as_u64() <= Some(1),
        "the hourly reminder fired on a leftover row: {hourly}"
    );
    let status = broker.terminate();
    assert!(status.success(), "broker exited with {status}");
    broker.assert_stopped_cleanly();
}
