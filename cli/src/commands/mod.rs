pub mod server;
pub mod up;
