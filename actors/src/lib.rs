//! The live layer's actors and wire protocol.
//!
//! This crate knows nothing about orders or templates: the web crate renders
//! fragments, this crate moves them. It starts with the wire format every push
//! uses (DESIGN.md); the Listener, Hub and Session actors build on it.

pub mod protocol;
