from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    """Documents partner API tokens in the OpenAPI schema as bearer authentication."""

    target_class = "apps.partners.authentication.PartnerTokenAuthentication"
    name = "partnerToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A partner API token (ct_…), created in the admin and shown once.",
        }
