//! tocsin's integration tests, one module per concern, in one test binary: the support
//! module (real servers on loopback, the binary as a process) and the library are
//! compiled once rather than once per file. scripts/test.sh runs each test in its own
//! process (cargo-nextest), so tests still cannot touch each other's state.

mod support;

mod api;
mod autoresponder;
mod blackbox;
mod browser;
mod campaign;
mod channels;
mod cli;
mod cluster;
mod compensation;
mod config;
mod deliverability;
mod dependencies;
mod deploy;
mod drill;
mod e2e_staff;
mod engine;
mod feeds;
mod grouping;
mod heartbeat;
mod hotline;
mod incident_machine;
mod mail;
mod maintenance;
mod merge;
mod outage;
mod own_trouble;
mod pages;
mod postgres;
mod probe_dns_tcp;
mod probe_grpc;
mod probe_http;
mod probe_icmp;
mod probe_starttls;
mod prometheus;
mod public_pages;
mod scheduler;
mod store;
mod subscriptions;
mod templates;
mod updates;
mod votes;
mod web;
mod webhooks;
