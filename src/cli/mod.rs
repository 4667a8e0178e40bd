//! Commands that talk to a running tocsin rather than being one.

pub mod incident;
