//! The one integration-test binary: every test drives the real `slipway`
//! binary, the way a user's session would.

mod support;

mod bundles;
mod db;
mod dbdeploy;
mod diff;
mod docs;
mod faults;
mod fleet;
mod gates;
mod help;
mod host;
mod hostile;
mod json_doc;
mod json_golden;
mod pg;
mod plan;
mod proxy;
mod pull;
mod push;
mod releases;
mod remote;
mod security;
mod serve;
mod service;
mod setup;
mod sign;
mod site;
mod ssh;
