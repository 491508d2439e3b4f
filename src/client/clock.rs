//! Typed calls for the simulation clock (PROTOCOL.md §23).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::ClockStatus;
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// The mesh's simulation clock now.
    pub async fn clock(&self) -> Result<ClockStatus, ClientError> {
        self.clock_request(ClientMessage::GetClock {}).await
    }

    /// Sets the clock's speed (1–100 times real time), starting it if it was never set.
    pub async fn set_clock(&self, speed: f64) -> Result<ClockStatus, ClientError> {
        self.clock_request(ClientMessage::SetClock { speed }).await
    }

    pub async fn pause_clock(&self) -> Result<ClockStatus, ClientError> {
        self.clock_request(ClientMessage::PauseClock {}).await
    }

    pub async fn resume_clock(&self) -> Result<ClockStatus, ClientError> {
        self.clock_request(ClientMessage::ResumeClock {}).await
    }

    async fn clock_request(&self, frame: ClientMessage) -> Result<ClockStatus, ClientError> {
        match self.request(frame).await? {
            ServerMessage::ClockStatus(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }
}
