pub mod apply;
pub mod bench;
pub mod cluster;
pub mod edit;
pub mod get;
pub mod server;
pub mod up;
