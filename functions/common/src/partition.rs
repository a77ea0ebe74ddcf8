//! AWS partitions: the one place that knows which ARN prefix and DNS suffix a region uses.
//!
//! An account lives in exactly one partition, and every ARN and endpoint of its resources
//! carries that partition's name and domain ("Identify AWS resources with Amazon Resource
//! Names (ARNs)", IAM User Guide; "Endpoints and ARNs for Amazon Web Services in China"):
//!
//! | partition    | regions                         | ARN prefix       | DNS suffix         |
//! |--------------|---------------------------------|------------------|--------------------|
//! | `aws`        | every other region              | `arn:aws:`       | `amazonaws.com`    |
//! | `aws-cn`     | `cn-north-1`, `cn-northwest-1`  | `arn:aws-cn:`    | `amazonaws.com.cn` |
//! | `aws-us-gov` | `us-gov-west-1`, `us-gov-east-1`| `arn:aws-us-gov:`| `amazonaws.com`    |
//!
//! Service principals (`lambda.amazonaws.com`, `apigateway.amazonaws.com`) are the same in
//! every partition: China's API Gateway and Lambda use the `.amazonaws.com` names too.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov];

    /// The partition a region belongs to, by the region name's prefix (`cn-`, `us-gov-`), the
    /// rule the SDKs' partition tables encode.
    pub fn of(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }

    /// The partition's name as ARNs spell it.
    pub fn id(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The domain of the partition's service endpoints.
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
        }
    }

    /// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` (region and account may be empty, as
    /// IAM's and API Gateway's management ARNs have them).
    pub fn arn(self, service: &str, region: &str, account: &str, resource: &str) -> String {
        format!("arn:{}:{service}:{region}:{account}:{resource}", self.id())
    }

    /// A service's principal in trust and resource policies.
    pub fn service_principal(self, service: &str) -> String {
        format!("{service}.amazonaws.com")
    }

    /// `API.execute-api.REGION.SUFFIX`: where API Gateway serves an API's stages.
    pub fn execute_api_host(self, api_id: &str, region: &str) -> String {
        format!("{api_id}.execute-api.{region}.{}", self.dns_suffix())
    }

    /// Whether `host` is one of this partition's AWS endpoints.
    pub fn is_aws_host(self, host: &str) -> bool {
        host.ends_with(&format!(".{}", self.dns_suffix()))
    }

    /// Whether the partition's endpoints chain to Amazon Trust Services' roots. China's
    /// regions are run apart from the others and serve certificates of other authorities.
    pub fn uses_amazon_roots(self) -> bool {
        self != Partition::AwsCn
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::Partition;

    #[test]
    fn each_partition_has_its_arns_and_domain() {
        let cases = [
            ("eu-west-1", "aws", "amazonaws.com"),
            ("us-east-1", "aws", "amazonaws.com"),
            ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
            ("cn-northwest-1", "aws-cn", "amazonaws.com.cn"),
            ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
            ("us-gov-east-1", "aws-us-gov", "amazonaws.com"),
        ];
        for (region, id, suffix) in cases {
            let p = Partition::of(region);
            assert_eq!((p.id(), p.dns_suffix()), (id, suffix), "{region}");
            assert_eq!(
                p.arn("lambda", region, "123456789012", "function:f"),
                format!("arn:{id}:lambda:{region}:123456789012:function:f")
            );
            assert_eq!(
                p.execute_api_host("abc", region),
                format!("abc.execute-api.{region}.{suffix}")
            );
            assert_eq!(p.service_principal("lambda"), "lambda.amazonaws.com");
        }
        assert_eq!(
            Partition::Aws.arn("iam", "", "1", "role/r"),
            "arn:aws:iam::1:role/r"
        );
        assert!(Partition::AwsCn.is_aws_host("a.execute-api.cn-north-1.amazonaws.com.cn"));
        assert!(!Partition::AwsCn.is_aws_host("a.execute-api.us-east-1.amazonaws.com"));
        assert!(Partition::Aws.is_aws_host("dynamodb.us-east-1.amazonaws.com"));
        assert!(!Partition::Aws.is_aws_host("localhost.localstack.cloud"));
        assert!(!Partition::AwsCn.uses_amazon_roots());
        assert!(Partition::AwsUsGov.uses_amazon_roots());
    }
}
