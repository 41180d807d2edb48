//! An agent's admin and weight words (`agent-check`), applied the way the runtime API applies
//! `set server ... state` and `set weight` (HAProxy's `srv_adm_set_drain|maint|ready` and
//! `server_parse_weight_change_request`), before its health word.
use super::Runtime;
use crate::{
    api::{AdminState, cli},
    dataplane::ids::ServerId,
    health::{AgentAdmin, AgentReport},
};

impl Runtime {
    pub(super) fn on_agent_words(
        &mut self,
        id: ServerId,
        report: &AgentReport,
    ) -> anyhow::Result<()> {
        // A report that raced a reload which removed the server.
        if self.bal.server(id).is_none() {
            return Ok(());
        }
        if let Some(a) = report.admin {
            let want = match a {
                AgentAdmin::Ready => AdminState::Ready,
                AgentAdmin::Drain => AdminState::Drain,
                AgentAdmin::Maint => AdminState::Maint,
            };
            self.set_admin(id, want)?;
        }
        // A weight HAProxy would refuse changes nothing (it only warns).
        if let Some(w) = &report.weight
            && let Ok(w) = cli::parse_weight(w, self.initial_weight(id))
        {
            self.set_weight(id, w)?;
        }
        Ok(())
    }
}
