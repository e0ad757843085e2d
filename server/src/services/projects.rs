//! `fivesafes.v1.Projects`: who am I, my projects and their remaining budgets.

use std::sync::Arc;

use fivesafes_policies::Project;
use fivesafes_proto::v1::projects_server::{Projects, ProjectsServer};
use fivesafes_proto::v1::{
    Budget, ListProjectsRequest, ListProjectsResponse, ProjectInfo, TableInfo, WhoAmIRequest,
    WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use crate::state::{Need, State};

/// The service.
pub struct ProjectsService {
    /// Shared server state.
    pub state: Arc<State>,
}

impl ProjectsService {
    fn budget(&self, project: &Project) -> Budget {
        let used = self.state.budgets.used(self.state.today(), &project.id);
        Budget {
            queries_per_day: project.queries_per_day,
            used_today: used,
            remaining: project.queries_per_day.saturating_sub(used),
        }
    }
}

/// Days since 1970-01-01 as an ISO date.
pub fn iso_date(days: i32) -> String {
    fivesafes_engine::dates::format_ymd(days)
}

#[tonic::async_trait]
impl Projects for ProjectsService {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let caller = self.state.caller(request.metadata(), Need::Any).await?;
        Ok(Response::new(WhoAmIResponse {
            budget: Some(self.budget(&caller.project)),
            principal: caller.principal,
            project: caller.project.id,
            role: caller.role.as_str().into(),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        // Any valid token may list its own projects, whichever project header it sends.
        let principal = match self.state.auth.authenticate(request.metadata()) {
            Ok(p) => p,
            Err(_) => {
                return Err(self
                    .state
                    .caller(request.metadata(), Need::Any)
                    .await
                    .err()
                    .unwrap_or_else(|| Status::unauthenticated("invalid credentials")));
            }
        };
        let projects = self
            .state
            .register
            .projects()
            .iter()
            .filter(|p| !p.role_of(&principal).is_empty())
            .map(|p| ProjectInfo {
                id: p.id.clone(),
                purpose: p.purpose.clone(),
                roles: p
                    .role_of(&principal)
                    .iter()
                    .map(|r| r.as_str().into())
                    .collect(),
                opt_out_applies: matches!(p.opt_out, fivesafes_policies::OptOut::Applies),
                expires: iso_date(p.expires),
                tables: p
                    .tables
                    .iter()
                    .map(|t| TableInfo {
                        name: t.name.clone(),
                        class: if t.personal { "personal" } else { "public" }.into(),
                        columns: t.columns.clone(),
                    })
                    .collect(),
                budget: Some(self.budget(p)),
            })
            .collect();
        Ok(Response::new(ListProjectsResponse { projects }))
    }
}

/// The service to mount in tonic.
pub fn service(state: Arc<State>) -> ProjectsServer<ProjectsService> {
    ProjectsServer::new(ProjectsService { state })
}
