//! What the operator sees: kubectl's tables (columns per kind, AGE), and `describe`.
//! Pure: objects and the current time in, text out.

pub mod age;
pub mod describe;
pub mod table;
