//! The tradeloop node: consensus, networking and the runtime.
//!
//! Today: [`consensus`] (Malachite embedded behind our context and adapter, the sign-state
//! guard, the WAL), the simulator, and [`api`] (the HTTP ingress: submit events, status) over a
//! channel interface to the runtime. Networking and the runtime follow.

#![warn(missing_docs)]

pub mod api;
pub mod consensus;
pub mod sim;
