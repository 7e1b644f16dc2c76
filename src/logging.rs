//! Logging set-up: `tracing` events to stderr, human-readable or as JSON
//! lines. Stdout is left to command output (such as JSON) so that it can be
//! piped.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, fields at the top level, for log collectors.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level directive {directive:?}: {source}")]
    InvalidDirective {
        directive: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("logging is already initialised")]
    AlreadyInitialised(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the process-wide subscriber writing to stderr. `level_directive`
/// is an `EnvFilter` directive such as `info` or `warn,dogetower=debug`.
/// A second call returns [`LoggingError::AlreadyInitialised`].
pub fn init(format: LogFormat, level_directive: &str) -> Result<(), LoggingError> {
    use tracing_subscriber::util::SubscriberInitExt;
    // Colour codes only where a person reads them, never into a file or pipe.
    let ansi = std::io::stderr().is_terminal();
    subscriber(format, level_directive, std::io::stderr, ansi)?
        .try_init()
        .map_err(LoggingError::AlreadyInitialised)
}

/// The subscriber `init` installs, writing to `writer`; separate so tests can
/// capture its output.
pub(crate) fn subscriber<W>(
    format: LogFormat,
    level_directive: &str,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::builder()
            .parse(level_directive)
            .map_err(|source| LoggingError::InvalidDirective {
                directive: level_directive.to_string(),
                source,
            })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Human => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
    })
}

/// Log output captured in memory, for tests that read what was logged.
#[cfg(test)]
pub(crate) mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// A writer collecting everything into a shared buffer.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::Buffer;
    use super::*;

    fn capture(format: LogFormat, directive: &str, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, directive, buffer.clone(), false).unwrap();
        tracing::subscriber::with_default(subscriber, log);
        buffer.text()
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_fields_at_top_level() {
        let out = capture(LogFormat::Json, "info", || {
            tracing::info!(channel_id = "2Nabc", height = 42u64, "close broadcast");
            tracing::warn!("second");
        });
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["message"], "close broadcast");
        assert_eq!(lines[0]["channel_id"], "2Nabc");
        assert_eq!(lines[0]["height"], 42);
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[1]["level"], "WARN");
    }

    #[test]
    fn human_format_is_not_json_and_carries_fields() {
        let out = capture(LogFormat::Human, "info", || {
            tracing::info!(txid = "ab12", "sent");
        });
        assert!(out.contains("INFO"), "{out}");
        assert!(out.contains("sent"), "{out}");
        assert!(out.contains("txid=\"ab12\""), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
        assert!(
            !out.contains('\u{1b}'),
            "no colour codes when ansi is off: {out:?}"
        );
    }

    #[test]
    fn level_directive_filters_events() {
        let out = capture(LogFormat::Human, "warn", || {
            tracing::info!("hidden");
            tracing::warn!("shown");
        });
        assert!(!out.contains("hidden"), "{out}");
        assert!(out.contains("shown"), "{out}");

        let out = capture(LogFormat::Human, "warn,dogetower=debug", || {
            tracing::debug!(target: "dogetower::engine", "engine detail");
            tracing::debug!(target: "other", "other detail");
        });
        assert!(out.contains("engine detail"), "{out}");
        assert!(!out.contains("other detail"), "{out}");
    }

    #[test]
    fn invalid_directive_is_an_error() {
        let err = subscriber(LogFormat::Human, "dogetower=loud", Buffer::default(), false)
            .err()
            .expect("a level name that does not exist must be refused");
        assert!(matches!(err, LoggingError::InvalidDirective { .. }));
        assert!(err.to_string().contains("dogetower=loud"), "{err}");
    }

    #[test]
    fn format_names_parse_in_lowercase() {
        #[derive(Deserialize)]
        struct T {
            format: LogFormat,
        }
        let t: T = toml::from_str(r#"format = "json""#).unwrap();
        assert_eq!(t.format, LogFormat::Json);
        assert!(toml::from_str::<T>(r#"format = "Json""#).is_err());
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("human", false), Ok(LogFormat::Human));
    }
}
