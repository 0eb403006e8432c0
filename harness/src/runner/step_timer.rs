//! One timer per actor for the deadlines of all its steps.
//!
//! `tokio::time::timeout_at` per step registers a timer in the runtime's wheel
//! when the step first waits and removes it when the step ends. In a run of
//! small round trips every `expect` waits, so every exchange paid for both:
//! about 600 of the 5,600 user-space instructions an exchange cost the runner
//! (callgrind; BENCHMARKS.md, "Second session of 28 Nov").
//!
//! A step's deadline is its start plus its timeout, so the deadlines of
//! consecutive steps mostly move forward. This timer is therefore armed once
//! and left armed: a step whose deadline is later than the armed instant keeps
//! it, and if the timer goes off first (a long script outlives the first step's
//! timeout) it is moved to the current step's deadline then. Only a step whose
//! deadline is earlier than the armed instant (a shorter `timeout` on the step)
//! moves it at once. The timer never fires late; an early firing costs one
//! re-arm.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// The step ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// The actor's step timer; see the module docs.
#[derive(Default)]
pub struct StepTimer {
    /// Created at the first wait, inside the runtime (a `Sleep` needs one); its
    /// `deadline()` is the instant it is armed for.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl StepTimer {
    /// Runs `work` until it completes or `deadline` passes, whichever is first.
    /// `work` is polled first, so work that is ready wins even past the deadline,
    /// as with `tokio::time::timeout_at`.
    pub async fn bound<F: Future>(
        &mut self,
        deadline: Instant,
        work: F,
    ) -> Result<F::Output, TimedOut> {
        let mut work = pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            self.poll_passed(deadline, cx).map(|()| Err(TimedOut))
        })
        .await
    }

    /// Ready once `deadline` has passed; until then the task is woken by then at
    /// the latest.
    fn poll_passed(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if sleep.deadline() > deadline {
                sleep.as_mut().reset(deadline);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if sleep.deadline() >= deadline => return Poll::Ready(()),
                // It went off for an earlier step's deadline: wait for this one.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Deadlines that move forward keep the first arming; an earlier one is
    /// honoured at once; a timer that went off early is re-armed, not believed.
    /// Paused time makes every instant exact.
    #[tokio::test(start_paused = true)]
    async fn every_deadline_is_kept_whatever_the_armed_instant() {
        let mut timer = StepTimer::default();
        let start = Instant::now();
        let never = std::future::pending::<()>();

        // Work that is ready wins, even with no time left.
        assert_eq!(timer.bound(start, async { 7 }).await, Ok(7));

        // The first wait arms the timer at its deadline (5 s).
        let first = tokio::time::sleep_until(start + Duration::from_secs(1));
        assert_eq!(
            timer.bound(start + Duration::from_secs(5), first).await,
            Ok(())
        );

        // A later deadline: the timer stays armed at 5 s, goes off there, is
        // moved to 8 s, and the step times out at 8 s exactly.
        let later = start + Duration::from_secs(8);
        assert_eq!(timer.bound(later, never).await, Err(TimedOut));
        assert_eq!(Instant::now(), later);

        // An earlier deadline than the armed one (a short step timeout) fires on
        // time, not at the armed instant.
        let now = Instant::now();
        let armed_later = now + Duration::from_secs(30);
        let _ = timer.bound(armed_later, async {}).await;
        let short = now + Duration::from_millis(10);
        assert_eq!(
            timer.bound(short, std::future::pending::<()>()).await,
            Err(TimedOut)
        );
        assert_eq!(Instant::now(), short);

        // Work that finishes before its deadline is not cut short by an armed
        // instant that has already passed.
        let now = Instant::now();
        let finish = tokio::time::sleep_until(now + Duration::from_secs(2));
        assert_eq!(
            timer.bound(now + Duration::from_secs(3), finish).await,
            Ok(())
        );
        assert_eq!(Instant::now(), now + Duration::from_secs(2));
    }
}
