//! `logging::init` installs a process-wide subscriber. The other tests share
//! this process and run in-process code that logs (the ZMQ subscriber, the
//! RPC client), so the checks run in a child process of their own: this test
//! binary again, with only this test selected.

use std::process::Command;

use dogetower::logging::{init, LogFormat, LoggingError};

/// Set in the child process, where the checks run.
const IN_CHILD: &str = "DOGETOWER_TEST_LOGGING_CHILD";

#[test]
fn init_refuses_bad_directives_and_a_second_call_without_panicking() {
    if std::env::var_os(IN_CHILD).is_none() {
        run_in_child("init_refuses_bad_directives_and_a_second_call_without_panicking");
        return;
    }
    // A refused directive must not use up the one installation.
    let err = init(LogFormat::Human, "dogetower=loud").unwrap_err();
    assert!(matches!(err, LoggingError::InvalidDirective { .. }), "{err}");

    init(LogFormat::Json, "info").expect("first initialisation succeeds");
    let err = init(LogFormat::Human, "info").unwrap_err();
    assert!(matches!(err, LoggingError::AlreadyInitialised(_)), "{err}");
}

/// Runs the test `name` of this module alone in a new process of this test
/// binary, and checks that it ran and passed.
fn run_in_child(name: &str) {
    // module_path!() is "it::logging"; test names leave out the crate.
    let module = module_path!().split_once("::").expect("a module path").1;
    let test = format!("{module}::{name}");
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in the child:\n{stdout}"
    );
}
