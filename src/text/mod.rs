//! Leaf helpers for turning values into text at the edges: times, HTML, e-mail
//! addresses. Nothing here knows of incidents, stores or mail transports; every room may
//! use it.

pub mod email;
pub mod html;
pub mod time;
