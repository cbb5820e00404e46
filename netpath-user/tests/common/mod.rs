//! Shared by the integration tests: see `netpath_user::testing`.
#![allow(unused_imports)]
pub use netpath_user::testing::*;
