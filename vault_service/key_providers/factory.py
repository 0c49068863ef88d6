"""Build the configured key provider. Vendor SDKs are imported only for the provider in use, with
an error that names the extra to install."""

from __future__ import annotations

from collections.abc import Mapping

from vault_service.clock import Clock
from vault_service.config import Config
from vault_service.errors import ConfigError
from vault_service.key_providers.base import KeyProvider


def build_provider(config: Config, env: Mapping[str, str], clock: Clock | None = None) -> KeyProvider:
    """The provider named by ``[keys] provider``."""
    keys = config.keys
    if keys.provider == "local":
        from vault_service.key_providers.local import LocalKeyProvider

        return LocalKeyProvider.from_env(config.path(keys.keyring_path), keys.passphrase_env, env, clock)
    if keys.provider == "aws-kms":
        from vault_service.key_providers.aws_kms import AwsKmsKeyProvider, KmsSettings

        return AwsKmsKeyProvider(
            KmsSettings(
                alias=keys.kms_alias,
                initial_key_id=keys.kms_key_id or None,
                region=keys.kms_region,
                endpoint_url=keys.kms_endpoint_url or None,
                max_attempts=keys.provider_max_attempts,
                timeout_seconds=keys.provider_timeout_seconds,
                pending_window_days=keys.kms_pending_window_days,
            ),
            env,
        )
    if keys.provider == "vault-transit":
        from vault_service.key_providers.vault_transit import (
            VaultTransitKeyProvider,
            settings_from_env,
        )

        return VaultTransitKeyProvider(
            settings_from_env(
                keys.transit_url,
                keys.transit_token_env,
                env,
                key=keys.transit_key,
                mount=keys.transit_mount,
                binding=keys.transit_binding,
                max_attempts=keys.provider_max_attempts,
                timeout_seconds=keys.provider_timeout_seconds,
            )
        )
    raise ConfigError(f"keys.provider: unknown provider {keys.provider!r}")
