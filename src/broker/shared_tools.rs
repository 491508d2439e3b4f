//! Tool calls in flight (issue 15 tier 1): each `mcp_call` waits here for its host's
//! `mcp_call_response`, and each caller has a bounded number waiting at once. Nothing here
//! outlives the broker: a call is relayed live or refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::presence::CloseOrder;

use crate::protocol::messages::McpCallResult;

/// Calls one member may have waiting for hosts at once.
pub const MAX_CALLS_IN_FLIGHT: usize = 16;

/// What a host sent back for a call.
#[derive(Debug)]
pub enum HostAnswer {
    Result(McpCallResult),
    /// The result was this many bytes, over the limit; it is not relayed.
    TooLarge(usize),
}

struct Waiting<A> {
    /// Only this presence may answer.
    host_presence_id: String,
    answer: oneshot::Sender<A>,
}

struct Inner<A> {
    waiting: HashMap<String, Waiting<A>>,
    /// Calls in flight by (mesh id, caller member id).
    per_caller: HashMap<(String, String), usize>,
}

/// Requests relayed to a host and waiting for its answer `A` (tool calls; peer files use
/// the same with their own answer type).
pub struct ToolCalls<A = HostAnswer> {
    inner: Arc<Mutex<Inner<A>>>,
}

impl<A> Default for ToolCalls<A> {
    fn default() -> Self {
        ToolCalls {
            inner: Arc::new(Mutex::new(Inner {
                waiting: HashMap::new(),
                per_caller: HashMap::new(),
            })),
        }
    }
}

impl<A> Clone for ToolCalls<A> {
    fn clone(&self) -> Self {
        ToolCalls {
            inner: self.inner.clone(),
        }
    }
}

/// A call's place among those in flight; dropping it (answered, timed out, host gone) frees
/// the place and forgets the call.
pub struct InFlight<A = HostAnswer> {
    calls: ToolCalls<A>,
    call_id: String,
    caller: (String, String),
}

impl<A> InFlight<A> {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
}

impl<A> Drop for InFlight<A> {
    fn drop(&mut self) {
        let mut inner = self.calls.lock();
        inner.waiting.remove(&self.call_id);
        if let Some(n) = inner.per_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                inner.per_caller.remove(&self.caller);
            }
        }
    }
}

impl<A> ToolCalls<A> {
    fn lock(&self) -> MutexGuard<'_, Inner<A>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a new call of `caller_member_id`, answered only by
    /// `host_presence_id`; `None` when the caller already has [`MAX_CALLS_IN_FLIGHT`].
    pub fn start(
        &self,
        mesh_id: &str,
        caller_member_id: &str,
        host_presence_id: &str,
    ) -> Option<(InFlight<A>, oneshot::Receiver<A>)> {
        let caller = (mesh_id.to_string(), caller_member_id.to_string());
        let call_id = hex::encode(crate::crypto::random_bytes::<12>());
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let n = inner.per_caller.entry(caller.clone()).or_insert(0);
        if *n >= MAX_CALLS_IN_FLIGHT {
            return None;
        }
        *n += 1;
        inner.waiting.insert(
            call_id.clone(),
            Waiting {
                host_presence_id: host_presence_id.to_string(),
                answer: tx,
            },
        );
        drop(inner);
        let place = InFlight {
            calls: self.clone(),
            call_id,
            caller,
        };
        Some((place, rx))
    }

    /// [`ToolCalls::start`], or the refusal sentence when the caller already has
    /// [`MAX_CALLS_IN_FLIGHT`] `what` ("tool calls", "peer-file requests") waiting.
    pub fn start_or_refuse(
        &self,
        mesh_id: &str,
        caller_member_id: &str,
        host_presence_id: &str,
        what: &str,
    ) -> Result<(InFlight<A>, oneshot::Receiver<A>), String> {
        self.start(mesh_id, caller_member_id, host_presence_id)
            .ok_or_else(|| {
                format!(
                    "you already have {MAX_CALLS_IN_FLIGHT} {what} waiting for their hosts; wait for one to finish"
                )
            })
    }

    /// Hands a host's answer to the waiting call; false when no such call waits for this
    /// presence (unknown, already answered, timed out, or another presence's).
    pub fn answer(&self, call_id: &str, from_presence_id: &str, result: A) -> bool {
        let mut inner = self.lock();
        match inner.waiting.get(call_id) {
            Some(w) if w.host_presence_id == from_presence_id => {}
            _ => return false,
        }
        match inner.waiting.remove(call_id) {
            Some(w) => w.answer.send(result).is_ok(),
            None => false,
        }
    }
}

/// Why a relayed request got no answer from its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// The host's presence ended (its place was dropped without an answer).
    HostGone,
    /// The host's connection closed while the request waited.
    Disconnected,
    Timeout,
    Shutdown,
}

/// Waits for a host's answer: at most `wait`, while the host stays connected (`host_closed`,
/// its connection's closer) and the broker runs.
pub async fn wait_for_host<A>(
    answered: oneshot::Receiver<A>,
    mut host_closed: watch::Receiver<Option<CloseOrder>>,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Result<A, NoAnswer> {
    tokio::select! {
        a = tokio::time::timeout(wait, answered) => match a {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(NoAnswer::HostGone),
            Err(_) => Err(NoAnswer::Timeout),
        },
        _ = host_closed.wait_for(Option::is_some) => Err(NoAnswer::Disconnected),
        _ = shutdown.cancelled() => Err(NoAnswer::Shutdown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_has_a_bounded_number_of_calls_and_only_the_host_answers() {
        let calls = ToolCalls::default();
        let mut held = Vec::new();
        for _ in 0..MAX_CALLS_IN_FLIGHT {
            held.push(calls.start("m", "bob", "host").expect("room"));
        }
        assert!(calls.start("m", "bob", "host").is_none(), "one too many");
        assert!(
            calls.start("m", "carol", "host").is_some(),
            "others unaffected"
        );
        let (place, mut rx) = held.pop().expect("a call");
        let id = place.call_id().to_string();
        assert!(!calls.answer(
            &id,
            "someone-else",
            HostAnswer::Result(McpCallResult::default())
        ));
        assert!(calls.answer(&id, "host", HostAnswer::Result(McpCallResult::default())));
        assert!(rx.try_recv().is_ok());
        assert!(
            !calls.answer(&id, "host", HostAnswer::Result(McpCallResult::default())),
            "once"
        );
        drop(place);
        assert!(calls.start("m", "bob", "host").is_some(), "a place freed");
    }
}
