//! `logging::init` installs a process-wide subscriber, so it is tested in its
//! own test binary (its own process), in a single test.

use dogetower::logging::{init, LogFormat, LoggingError};

#[test]
fn init_refuses_bad_directives_and_a_second_call_without_panicking() {
    // A refused directive must not use up the one installation.
    let err = init(LogFormat::Human, "dogetower=loud").unwrap_err();
    assert!(matches!(err, LoggingError::InvalidDirective { .. }), "{err}");

    init(LogFormat::Json, "info").expect("first initialisation succeeds");
    let err = init(LogFormat::Human, "info").unwrap_err();
    assert!(matches!(err, LoggingError::AlreadyInitialised(_)), "{err}");
}
