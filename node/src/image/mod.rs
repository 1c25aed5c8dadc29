//! Images on a node: references ([`reference`]), the content-addressed store with import
//! from OCI layouts ([`store`]), and layer unpacking with whiteouts ([`unpack`]).

pub mod reference;
pub mod store;
pub mod unpack;
