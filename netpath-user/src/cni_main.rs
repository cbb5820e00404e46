//! `netpath-cni`: the CNI plugin (see `netpath_user::cni`).
fn main() -> std::process::ExitCode {
    netpath_user::cni::main()
}
