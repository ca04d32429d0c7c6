//! Renderers: each takes the model and a writer. `maps` text lives in `crate::maps`.

pub mod deps;
pub mod json;
pub mod table;
