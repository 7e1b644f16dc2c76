fn main() -> std::process::ExitCode {
    dogetower::cli::main()
}
