//! lx-server: the marketplace for on-demand live video.
//!
//! `main.rs` is thin; everything it wires together is here so that tests and
//! benchmarks can build the same application.

pub mod app;
pub mod auth;
pub mod broker;
pub mod chain;
pub mod clock;
pub mod config;
pub mod console;
pub mod credit;
pub mod credit_watch;
pub mod dispatch;
pub mod edge;
pub mod egress;
pub mod error;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod mcp;
pub mod media;
pub mod mqtt;
pub mod pricing;
pub mod proof;
pub mod replicas;
pub mod retention;
pub mod routes;
pub mod serve;
pub mod session;
pub mod settlement;
pub mod store;
pub mod verify;
pub mod webhooks;
