//! What happens, to every open page: [`follow`] reads the broker's pushes from the dashboard's
//! connection and turns them into events, the [`Hub`] fans them out, and `GET /events` streams
//! them as server-sent events. The page re-reads a list when its event says it changed and
//! never polls.
//!
//! Events: `message` (a decrypted [`super::conversations::Message`]), `peers` (someone came,
//! left or changed), `status` (a session's status changed), `changed` (`{area}`: a list such
//! as the tasks, files or memory changed), `state` (a board key changed), `approvals` (a
//! request arrived or was decided), `tasks` and `files` (the dashboard changed one), `link`
//! (the broker connection's state).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::conversations;
use crate::broker::http::Body;
use crate::client::Link;
use crate::client::approvals::ApprovalUpdate;
use crate::protocol::ServerMessage;

/// How often an idle stream gets a comment line, so proxies and the browser keep it open.
const KEEPALIVE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    /// One line of JSON.
    pub data: String,
}

impl Event {
    fn wire(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

pub struct Hub {
    tx: broadcast::Sender<Event>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(1024);
        Hub { tx }
    }

    /// Sends `data` as event `name` to every open page.
    pub fn publish(&self, name: &'static str, data: &impl Serialize) {
        let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        let _ = self.tx.send(Event { name, data });
    }

    /// `GET /events`: the stream of events from now on. A page that falls behind is told to
    /// re-read everything (`resync`). A task per page forwards the events and a comment line
    /// now and then; it ends when the page has gone (the next write fails).
    pub fn stream(&self) -> Response<Body> {
        let mut events = self.tx.subscribe();
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
            let mut next = Bytes::from_static(b": connected\nretry: 2000\n\n");
            loop {
                if tx.send(next).await.is_err() {
                    return;
                }
                next = tokio::select! {
                    got = events.recv() => match got {
                        Ok(event) => event.wire(),
                        Err(broadcast::error::RecvError::Lagged(_)) => Event {
                            name: "resync",
                            data: "null".into(),
                        }
                        .wire(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = ticker.tick() => Bytes::from_static(b": keepalive\n\n"),
                };
            }
        });
        let frames = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|b| b.map(|b| Ok::<_, Infallible>(Frame::data(b))))
        });
        let body = StreamBody::new(frames)
            .map_err(|never: Infallible| match never {})
            .boxed();
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// Reads the connection's pushes until it ends for good, publishing what they mean. Nothing is
/// acknowledged: an observer's copies need no `client_ack`, and the member's sessions keep
/// their messages.
pub async fn follow(shared: Arc<Shared>) {
    let mut link = shared.client.link();
    let hub_link = shared.clone();
    tokio::spawn(async move {
        while link.changed().await.is_ok() {
            let state = match &*link.borrow() {
                Link::Up => "up".to_string(),
                Link::Reconnecting => "reconnecting".to_string(),
                Link::Down(why) => format!("down: {why}"),
            };
            hub_link.hub.publish("link", &json!({ "link": state }));
            // Whatever was missed while away is re-read.
            hub_link.hub.publish("resync", &serde_json::Value::Null);
        }
    });
    while let Some(frame) = shared.client.next_push().await {
        handle(&shared, &frame);
    }
}

fn handle(shared: &Shared, frame: &ServerMessage) {
    if let Some(update) = ApprovalUpdate::from_push(&shared.client, frame) {
        let approval = match update {
            ApprovalUpdate::Requested(a) | ApprovalUpdate::Decided(a) => json!(a),
            ApprovalUpdate::Answered(d) => json!(d),
        };
        shared.hub.publish("approvals", &approval);
        return;
    }
    match frame {
        ServerMessage::Push(push) if push.subtype.as_deref() == Some("system") => {
            // The broker tells observers of each status change and of each list that changed
            // (PROTOCOL.md §3.1, §5.3); everything else said about the mesh is about who is in
            // it.
            match push.event.as_deref() {
                Some("peer_status") => shared.hub.publish("status", &push.event_data),
                Some("mesh_changed") => shared.hub.publish("changed", &push.event_data),
                _ => shared.hub.publish(
                    "peers",
                    &json!({ "event": push.event, "data": push.event_data }),
                ),
            }
        }
        ServerMessage::Push(push) => {
            let message = conversations::from_push(&shared.client, push);
            if shared.log.add(message.clone()) {
                shared.hub.publish("message", &message);
            }
        }
        ServerMessage::StateChange(change) => shared.hub.publish("state", change),
        _ => {}
    }
}
