//! Waiting for a session to reach a state, as the reference SDK's `waitFor`:
//! poll until the predicate holds, fail with `INVALID_STATE` if the session
//! ends up terminal first, `TIMEOUT` when the time is up.

use std::time::Duration;

use lx_protocol::api::{SessionDto, SessionState};
use uuid::Uuid;

use crate::{Client, Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Duration,
    pub poll_interval: Duration,
}

impl Default for WaitOptions {
    /// The reference SDK's defaults: 30 s, polled every second.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What a wait saw.
#[derive(Debug, Clone)]
pub struct Waited {
    pub session: SessionDto,
    pub waited: Duration,
}

/// What the poll concluded from one reading of the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Done,
    Hopeless,
    KeepWaiting,
}

pub(crate) fn judge(state: SessionState, wanted: impl Fn(SessionState) -> bool) -> Verdict {
    if wanted(state) {
        Verdict::Done
    } else if state.is_terminal() {
        Verdict::Hopeless
    } else {
        Verdict::KeepWaiting
    }
}

impl Client {
    /// Polls the session until `wanted(state)`; `progress` sees every reading
    /// (a CLI prints the state as it changes).
    pub async fn wait_for(
        &self,
        id: Uuid,
        wanted: impl Fn(SessionState) -> bool,
        options: WaitOptions,
        mut progress: impl FnMut(&SessionDto, Duration),
    ) -> Result<Waited> {
        let started = tokio::time::Instant::now();
        loop {
            let session = self.session(id).await?;
            let waited = started.elapsed();
            progress(&session, waited);
            match judge(session.state, &wanted) {
                Verdict::Done => return Ok(Waited { session, waited }),
                Verdict::Hopeless => {
                    return Err(Error::UnexpectedState {
                        session_id: id,
                        state: session.state,
                    });
                }
                Verdict::KeepWaiting => {}
            }
            let left = options.timeout.saturating_sub(waited);
            if left.is_zero() {
                return Err(Error::Timeout {
                    session_id: id,
                    state: session.state,
                    waited,
                });
            }
            tokio::time::sleep(options.poll_interval.min(left)).await;
        }
    }

    /// Waits for LIVE (PAUSED counts: the stream was live and can resume).
    pub async fn wait_for_live(
        &self,
        id: Uuid,
        options: WaitOptions,
        progress: impl FnMut(&SessionDto, Duration),
    ) -> Result<Waited> {
        self.wait_for(
            id,
            |s| matches!(s, SessionState::Live | SessionState::Paused),
            options,
            progress,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_state_ends_the_wait_unless_it_is_the_one_wanted() {
        let live = |s| s == SessionState::Live;
        assert_eq!(judge(SessionState::Live, live), Verdict::Done);
        assert_eq!(judge(SessionState::Assigned, live), Verdict::KeepWaiting);
        assert_eq!(judge(SessionState::Requested, live), Verdict::KeepWaiting);
        for terminal in [
            SessionState::Ended,
            SessionState::Cancelled,
            SessionState::Expired,
        ] {
            assert_eq!(judge(terminal, live), Verdict::Hopeless, "{terminal:?}");
        }
        let ended = |s| s == SessionState::Ended;
        assert_eq!(judge(SessionState::Ended, ended), Verdict::Done);
    }
}
