pub mod apply;
pub mod bench;
pub mod cluster;
pub mod edit;
pub mod get;
pub mod node;
pub mod server;
pub mod up;
