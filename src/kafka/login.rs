//! A check of the login before the daemon starts, for brokers that ask for one (SASL): when they
//! refuse the credentials, librdkafka only retries and logs, and the first request to time out
//! says "broker transport failure". This check asks for the cluster's metadata while it serves
//! librdkafka's error events, and turns a refused login into an error that says so.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::client::consumer_client_config;
use crate::config::KafkaConfig;

/// How long the check waits for the brokers to answer or refuse the login.
const LOGIN_WAIT: Duration = Duration::from_secs(10);

/// The brokers refused the SASL login.
#[derive(Debug, thiserror::Error)]
#[error(
    "the brokers refused the login of sasl.username {username:?}: {reason} (check sasl.username, the password (VAEWATCH_KAFKA_PROPERTY_SASL_PASSWORD or sasl.password) and sasl.mechanisms)"
)]
pub struct LoginRefused {
    pub username: String,
    /// librdkafka's words.
    pub reason: String,
}

/// Keeps the first authentication error librdkafka reports.
#[derive(Default)]
struct AuthenticationErrors(Mutex<Option<String>>);

impl ClientContext for AuthenticationErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication)
            && let Ok(mut first) = self.0.lock()
        {
            first.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl ConsumerContext for AuthenticationErrors {}

/// Whether the config logs in with SASL.
fn uses_sasl(kafka: &KafkaConfig) -> bool {
    kafka
        .consumer_properties()
        .get("security.protocol")
        .is_some_and(|p| p.to_ascii_uppercase().starts_with("SASL"))
}

/// With SASL configured, waits up to 10 s for the brokers to answer a metadata request and
/// fails when they refuse the login. Anything else (no SASL, brokers that answer, brokers that
/// cannot be reached) returns `Ok`: an unreachable broker is waited for by the daemon itself.
pub fn check_login(kafka: &KafkaConfig) -> Result<(), LoginRefused> {
    if !uses_sasl(kafka) {
        return Ok(());
    }
    let Ok(consumer) = consumer_client_config(kafka)
        .create_with_context::<_, BaseConsumer<_>>(AuthenticationErrors::default())
    else {
        // A client that cannot be created is reported by the daemon's own clients.
        return Ok(());
    };
    let deadline = Instant::now() + LOGIN_WAIT;
    while Instant::now() < deadline {
        if consumer
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return Ok(());
        }
        // Serves librdkafka's events, the error callback among them.
        let _ = consumer.poll(Duration::from_millis(100));
        let refused = consumer.context().0.lock().ok().and_then(|e| e.clone());
        if let Some(reason) = refused {
            let username = kafka
                .consumer_properties()
                .get("sasl.username")
                .cloned()
                .unwrap_or_default();
            return Err(LoginRefused { username, reason });
        }
    }
    Ok(())
}
