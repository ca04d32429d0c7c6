//! Renderers: each takes the model and a writer. The maps line format itself is
//! [`crate::maps`].

pub mod deps;
pub mod json;
pub mod maps;
pub mod svg;
pub mod table;
