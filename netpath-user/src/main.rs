//! `netpath`: the node agent (`netpath agent`) and its CLI, in Docker's words.
fn main() -> std::process::ExitCode {
    netpath_user::cli::main()
}
