//! Everything that talks to the VOLT server: enrollment and credentials,
//! TLS, the control socket and its reconnect rule, reverse-channel dispatch,
//! heartbeat.

pub mod control_socket;
pub mod credentials;
pub mod dispatch;
pub mod enrollment;
pub mod heartbeat;
pub mod reconnect;
pub mod tls;
