//! Shared by the integration tests: `netpath_user::testing`, and the namespaced installation.
#![allow(unused_imports, dead_code)]
pub use netpath_user::testing::*;

mod topo;
pub use topo::*;
