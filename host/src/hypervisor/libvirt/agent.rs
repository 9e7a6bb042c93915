//! The guest agent through libvirt's passthrough
//! (`virDomainQemuAgentCommand`): libvirt owns the agent's socket,
//! synchronizes with the agent before each command and bounds the wait.

use std::time::Duration;

use serde_json::{json, Value};
use virt::error::ErrorNumber;

use super::Conn;
use crate::hypervisor::agent::AgentLink;
use crate::hypervisor::error::DriverError;

const PEER: &str = "the guest agent";

/// A connection to one domain's guest agent.
pub(crate) struct LibvirtAgent {
    // The domain before the connection it came from (fields drop in order).
    dom: virt::domain::Domain,
    _conn: Conn,
    name: String,
}

impl LibvirtAgent {
    /// The agent of `dom`, once it has answered a ping within `timeout`.
    pub(super) fn connect(
        conn: Conn,
        dom: virt::domain::Domain,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, DriverError> {
        let mut a = Self {
            dom,
            _conn: conn,
            name: name.to_owned(),
        };
        a.call("guest-ping", json!({}), timeout)?;
        Ok(a)
    }
}

impl AgentLink for LibvirtAgent {
    fn call(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        let request = json!({ "execute": command, "arguments": arguments }).to_string();
        // libvirt's timeout is in whole seconds.
        let secs = i32::try_from(timeout.as_secs_f64().ceil() as u64)
            .unwrap_or(i32::MAX)
            .max(1);
        let answer =
            self.dom
                .qemu_agent_command(&request, secs, 0)
                .map_err(|source| match source.code() {
                    ErrorNumber::AgentUnresponsive
                    | ErrorNumber::AgentCommandTimeout
                    | ErrorNumber::OperationTimeout
                    | ErrorNumber::AgentUnsynced => DriverError::AgentSilent {
                        domain: self.name.clone(),
                        source,
                    },
                    code => DriverError::Command {
                        peer: PEER,
                        command: command.to_owned(),
                        class: format!("{code:?}"),
                        desc: source.message().to_owned(),
                    },
                })?;
        let msg: Value = serde_json::from_str(&answer).map_err(|e| DriverError::Protocol {
            peer: PEER,
            what: format!("{e}"),
        })?;
        match msg.get("return") {
            Some(v) => Ok(v.clone()),
            None => Err(DriverError::Protocol {
                peer: PEER,
                what: format!("no return value in the answer to {command}"),
            }),
        }
    }
}
