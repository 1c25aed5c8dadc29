//! Images on a node: references ([`reference`]), the content-addressed store with import
//! from OCI layouts ([`store`]), pulls over the distribution API ([`pull`]), and layer
//! unpacking with whiteouts ([`unpack`]).

pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;
