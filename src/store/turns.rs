//! Turns for work a member can ask for repeatedly and that may run long (SQL statements and
//! vector searches that scan a collection, on the blocking pool; graph queries, in their
//! worker processes): one turn per mesh, taken before one of a few shared ones. A mesh's calls wait for each other rather than in the shared
//! queue, so one busy mesh (a member with a hundred connections) cannot hold every shared turn
//! and the other meshes wait behind at most one call each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Meshes whose turn is remembered while no call holds or waits for it.
const KEPT_IDLE: usize = 64;

pub struct Turns {
    shared: Semaphore,
    per_mesh: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A turn: held while the work runs.
pub struct Turn<'a> {
    _mesh: OwnedSemaphorePermit,
    _shared: SemaphorePermit<'a>,
}

impl Turns {
    /// `shared` calls at once, all meshes together.
    pub fn new(shared: usize) -> Turns {
        Turns {
            shared: Semaphore::new(shared),
            per_mesh: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `mesh_id`'s turn, then a shared one.
    pub async fn take(&self, mesh_id: &str) -> Result<Turn<'_>, AcquireError> {
        let mesh = {
            let mut places = self.per_mesh.lock().unwrap_or_else(|e| e.into_inner());
            if places.len() > KEPT_IDLE {
                places.retain(|_, p| Arc::strong_count(p) > 1);
            }
            places
                .entry(mesh_id.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        let mesh = mesh.acquire_owned().await?;
        let shared = self.shared.acquire().await?;
        Ok(Turn {
            _mesh: mesh,
            _shared: shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mesh_waits_for_its_own_turn_and_others_go_ahead() {
        let turns = Turns::new(2);
        let first = turns.take("busy").await.unwrap();
        // The busy mesh's second call waits while its first holds the mesh's turn…
        let second = tokio::time::timeout(std::time::Duration::from_millis(50), turns.take("busy"));
        assert!(second.await.is_err(), "a mesh ran two calls at once");
        // …while another mesh takes the second shared turn.
        let other = turns.take("quiet").await.unwrap();
        // With both shared turns held, a third mesh waits.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), turns.take("third"));
        assert!(
            third.await.is_err(),
            "more calls ran than there are shared turns"
        );
        drop(other);
        drop(first);
        turns.take("busy").await.unwrap();
    }
}
