//! Whether the stage serves what a deploy changed: its deployments.

use super::*;

/// How long a deploy waits for the stage's own auto-deployment before deploying it itself, and
/// then for that deployment to finish. AWS deploys within seconds; these only bound a hang.
const AUTO_DEPLOY_WAIT: Duration = Duration::from_secs(10);
/// How CreateDeployment waits for the account's next slot (one every 5 s).
const DEPLOYMENT_SLOT: crate::aws::Pace = crate::aws::Pace {
    first: Duration::from_secs(5),
    max: Duration::from_secs(10),
    window: Duration::from_secs(120),
};
const DEPLOYMENT_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

/// The deployment a stage serves, and what its last auto-deployment said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    pub deployment_id: Option<String>,
    pub message: Option<String>,
}

/// What the stage serves now (default when it does not exist yet).
pub async fn served(clients: &Clients, api_id: &str, stage: &str) -> Result<Served, AwsError> {
    let got = found(
        clients
            .apigw
            .get_stage()
            .api_id(api_id)
            .stage_name(stage)
            .send()
            .await,
    )
    .ctx("GetStage", stage)?;
    Ok(got
        .map(|s| Served {
            deployment_id: s.deployment_id,
            message: s.last_deployment_status_message,
        })
        .unwrap_or_default())
}

/// Makes sure the stage serves what was just changed under the API. Routes, integrations and
/// authorizers reach clients only through a deployment ("Deploy WebSocket APIs in API
/// Gateway": every change other than stage settings needs a redeployment). A stage with
/// AutoDeploy deploys by itself, asynchronously: the stage then names a new `DeploymentId`,
/// and a failed attempt is reported only in its `LastDeploymentStatusMessage` (API reference,
/// Stage). So: wait for a new deployment and read its `DeploymentStatus` (GetDeployment:
/// PENDING, DEPLOYED or FAILED); if none came, deploy with CreateDeployment (StageName).
pub async fn confirm_deployment(
    clients: &Clients,
    api_id: &str,
    stage: &str,
    before: &Served,
    note: &dyn Fn(&str),
) -> Result<(), AwsError> {
    if emulated(clients) {
        let probe = clients
            .apigw
            .get_deployments()
            .api_id(api_id)
            .max_results("1")
            .customize()
            .config_override(attempts())
            .send()
            .await;
        match probe {
            Err(e) if unimplemented(&e) => {
                // moto has no deployments: its control plane is all there is to serve.
                note(
                    "the endpoint does not implement deployments; not checking that the stage serves the changes",
                );
                return Ok(());
            }
            other => {
                other.ctx("GetDeployments", api_id)?;
            }
        }
    }
    let started = Instant::now();
    loop {
        let now = served(clients, api_id, stage).await?;
        match &now.deployment_id {
            Some(id) if now.deployment_id != before.deployment_id => {
                if let Some(done) = settled(clients, api_id, stage, id, started).await? {
                    return done;
                }
            }
            // The attempt is over and the stage kept its old deployment: it failed.
            _ if now.message.is_some() && now.message != before.message => {
                return Err(not_deployed(stage, now.message.unwrap_or_default()));
            }
            _ => {}
        }
        if started.elapsed() >= AUTO_DEPLOY_WAIT {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    note(&format!(
        "stage {stage} did not deploy the changes by itself within {} s; deploying them",
        AUTO_DEPLOY_WAIT.as_secs()
    ));
    // "CreateDeployment: 1 request every 5 seconds per account" ("Amazon API Gateway
    // quotas"): another stack of the account deploying at the same moment takes the slot.
    let created = crate::aws::while_refused(
        "CreateDeployment",
        stage,
        DEPLOYMENT_SLOT,
        |code, _| code == "TooManyRequestsException",
        || {
            clients
                .apigw
                .create_deployment()
                .api_id(api_id)
                .stage_name(stage)
                .description("deployed by wsctl")
                .send()
        },
    )
    .await?;
    let id = created.deployment_id.unwrap_or_default();
    match created.deployment_status {
        Some(DeploymentStatus::Failed) => Err(not_deployed(
            stage,
            created.deployment_status_message.unwrap_or_default(),
        )),
        Some(DeploymentStatus::Pending) => settled(clients, api_id, stage, &id, Instant::now())
            .await?
            .unwrap_or_else(|| {
                Err(not_deployed(
                    stage,
                    "the deployment is still PENDING".into(),
                ))
            }),
        _ => Ok(()),
    }
}

/// Waits for deployment `id` to leave PENDING: `None` if it is still pending when the wait
/// (counted from `since`) is over.
async fn settled(
    clients: &Clients,
    api_id: &str,
    stage: &str,
    id: &str,
    since: Instant,
) -> Result<Option<Result<(), AwsError>>, AwsError> {
    loop {
        let d = clients
            .apigw
            .get_deployment()
            .api_id(api_id)
            .deployment_id(id)
            .send()
            .await
            .ctx("GetDeployment", id)?;
        match d.deployment_status {
            Some(DeploymentStatus::Failed) => {
                let message = d.deployment_status_message.unwrap_or_default();
                return Ok(Some(Err(not_deployed(stage, message))));
            }
            Some(DeploymentStatus::Pending) if since.elapsed() < DEPLOYMENT_WAIT => {
                tokio::time::sleep(POLL).await;
            }
            Some(DeploymentStatus::Pending) => return Ok(None),
            _ => return Ok(Some(Ok(()))),
        }
    }
}

fn not_deployed(stage: &str, message: String) -> AwsError {
    AwsError::NotDeployed {
        stage: stage.to_string(),
        message,
    }
}
