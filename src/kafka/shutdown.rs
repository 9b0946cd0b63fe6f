//! Closing the consumer without hanging the daemon's exit. Dropping an rdkafka consumer leaves
//! its group and can block for many seconds (or longer) when the broker is slow or gone, so the
//! drop runs on a blocking thread under a timeout. Seen against Apache Kafka 4.1: a member that
//! stops polling while its group rebalances (another member joining or leaving mid-join) blocks
//! on close until the session timeout (45 s by default). Keep polling until the assignment is
//! stable (no `PartitionChange` pending) before closing, and close under a timeout anyway.

use std::time::Duration;

/// The consumer did not close in time; its thread goes on in the background and the process may
/// exit anyway (the group notices through the session timeout).
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("kafka consumer did not close within {0:?}")]
    TimedOut(Duration),
    #[error("kafka consumer close task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Drops `consumer` on tokio's blocking pool and waits at most `timeout` for it. Commit what is
/// durable before calling this: closing commits nothing (auto commit is off).
pub async fn close_consumer<T: Send + 'static>(
    consumer: T,
    timeout: Duration,
) -> Result<(), CloseError> {
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    match tokio::time::timeout(timeout, closing).await {
        Ok(joined) => Ok(joined?),
        Err(_) => Err(CloseError::TimedOut(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct SlowDrop {
        dropped: Arc<AtomicBool>,
        delay: Duration,
    }

    impl Drop for SlowDrop {
        fn drop(&mut self) {
            std::thread::sleep(self.delay);
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_quick_drop_completes() {
        let dropped = Arc::new(AtomicBool::new(false));
        let value = SlowDrop {
            dropped: Arc::clone(&dropped),
            delay: Duration::ZERO,
        };
        close_consumer(value, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_hanging_drop_times_out_instead_of_blocking() {
        let dropped = Arc::new(AtomicBool::new(false));
        let value = SlowDrop {
            dropped: Arc::clone(&dropped),
            delay: Duration::from_millis(500),
        };
        let err = close_consumer(value, Duration::from_millis(1))
            .await
            .unwrap_err();
        assert!(matches!(err, CloseError::TimedOut(_)), "{err}");
    }
}
