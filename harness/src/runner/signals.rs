//! Named signals between actors: `signal = "NAME"` wakes every `wait = "NAME"`, and a
//! wait that starts after the signal returns at once (signals latch).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Signals {
    channels: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Signals {
    fn channel(&self, name: &str) -> watch::Receiver<bool> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(name.to_owned())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// Raises `name`; it stays raised for the rest of the run.
    pub fn raise(&self, name: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(name.to_owned())
            .or_insert_with(|| watch::channel(false).0)
            .send_replace(true);
    }

    /// Returns once `name` has been raised.
    pub async fn wait(&self, name: &str) {
        let mut receiver = self.channel(name);
        // The sender lives in the map for the whole run, so the channel never closes.
        let _ = receiver.wait_for(|raised| *raised).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_after_the_signal_returns_at_once() {
        let signals = Signals::default();
        signals.raise("go");
        signals.wait("go").await;
    }

    #[tokio::test]
    async fn a_wait_before_the_signal_is_woken_by_it() {
        let signals = std::sync::Arc::new(Signals::default());
        let waiter = tokio::spawn({
            let signals = signals.clone();
            async move { signals.wait("go").await }
        });
        signals.raise("go");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait was woken")
            .unwrap();
    }
}
