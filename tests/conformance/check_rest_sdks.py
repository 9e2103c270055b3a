#!/usr/bin/env python3
"""Conformance check of tokend's REST face, as the vendors' published SDKs see it.

Two clients, unchanged, pointed at tokend's HTTP address:

- Datadog's Python API client (`datadog-api-client`),
  `KeyManagementApi.revoke_personal_access_token`, the Bearer JWT given as
  its `access_token` (the `Authorization: Bearer` scheme it knows);
- the AWS SDK for Python (`boto3`), the `grafana` client's
  `delete_workspace_api_key`, with dummy credentials and region; its SigV4
  `Authorization` header is replaced by the Bearer JWT in a `before-send`
  event hook.

For each: success, not found, validation, permission. Each SDK must raise
its own typed error with the right code. Tokens are made through the `/v1/`
REST routes (stdlib HTTP), JWTs with `tokend mint-jwt`.

Usage: check_rest_sdks.py --http-addr HOST:PORT --tokend PATH --data-dir DIR

Prints one line per check and, last, `check_rest_sdks: N checks passed`;
exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import traceback
import urllib.request
from typing import Any, Callable

import boto3
import botocore.config
import botocore.exceptions
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException, ForbiddenException, NotFoundException
from datadog_api_client.v2.api.key_management_api import KeyManagementApi

WORKSPACE = "g-0123456789"
ORG = "conformance-rest"


class CheckFailed(AssertionError):
    """A mismatch between tokend's answer and the contract."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Context:
    def __init__(self, http_addr: str, tokend: str, data_dir: str) -> None:
        self.base = f"http://{http_addr}"
        self.tokend = tokend
        self.data_dir = data_dir
        self.admin = self.mint("rest-admin", roles=["admin"])
        self.nobody = self.mint("rest-nobody")

    def mint(self, sub: str, roles=()) -> str:
        argv = [self.tokend, "mint-jwt", "--data-dir", self.data_dir, "--org", ORG, "--sub", sub, "--ttl", "15m"]
        for role in roles:
            argv += ["--role", role]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """CreateToken through POST /v1/tokens."""
        request = urllib.request.Request(
            f"{self.base}/v1/tokens",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"authorization": f"Bearer {self.admin}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            expect(response.status == 200, f"POST /v1/tokens answered {response.status}")
            return json.loads(response.read())["token"]

    def get(self, token_id: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base}/v1/tokens/{token_id}",
            headers={"authorization": f"Bearer {self.admin}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["token"]


# --- Datadog ----------------------------------------------------------------


def datadog_api(ctx: Context, jwt: str) -> KeyManagementApi:
    configuration = Configuration(host=ctx.base, access_token=jwt)
    return KeyManagementApi(ApiClient(configuration))


def datadog_success(ctx: Context) -> str:
    token = ctx.create({"kind": "TOKEN_KIND_PERSONAL_ACCESS", "name": "dd-sdk"})
    result = datadog_api(ctx, ctx.admin).revoke_personal_access_token(token_id=token["tokenId"])
    expect(result is None, f"revoke returned {result!r}, expected None (204)")
    expect("revokeTime" in ctx.get(token["id"]), "the token is not revoked")
    return "revoke_personal_access_token: 204, revoked"


def datadog_error(ctx: Context, jwt: str, token_id: str, exception: type, status: int) -> str:
    try:
        datadog_api(ctx, jwt).revoke_personal_access_token(token_id=token_id)
    except ApiException as error:
        expect(type(error) is exception, f"raised {type(error).__name__}, expected {exception.__name__}")
        expect(error.status == status, f"status {error.status}, expected {status}")
        # The client decodes a JSON error body itself.
        body = error.body if isinstance(error.body, dict) else json.loads(error.body)
        expect(isinstance(body.get("errors"), list) and body["errors"], f"no errors list in {error.body!r}")
        expect(all(isinstance(e, str) for e in body["errors"]), f"errors are not strings: {error.body!r}")
        return f"{exception.__name__} {status}: {body['errors'][0]}"
    raise CheckFailed("no exception raised")


def datadog_not_found(ctx: Context) -> str:
    return datadog_error(ctx, ctx.admin, "0192f0c5-6c1e-7b7a-9d1e-3f5a2b6c7d8e", NotFoundException, 404)


def datadog_validation(ctx: Context) -> str:
    return datadog_error(ctx, ctx.admin, "not-a-uuid", ApiException, 400)


def datadog_permission(ctx: Context) -> str:
    token = ctx.create({"kind": "TOKEN_KIND_PERSONAL_ACCESS", "name": "dd-sdk-denied"})
    return datadog_error(ctx, ctx.nobody, token["tokenId"], ForbiddenException, 403)


# --- boto3 grafana ------------------------------------------------------------


def grafana(ctx: Context, jwt: str):
    client = boto3.client(
        "grafana",
        endpoint_url=ctx.base,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )

    def bearer(request, **_kwargs):
        # After SigV4 signing: tokend takes the caller's JWT.
        request.headers["Authorization"] = f"Bearer {jwt}"

    client.meta.events.register("before-send.grafana.DeleteWorkspaceApiKey", bearer)
    return client


def grafana_success(ctx: Context) -> str:
    token = ctx.create({"kind": "TOKEN_KIND_WORKSPACE_API_KEY", "name": "boto-key", "workspaceId": WORKSPACE})
    answer = grafana(ctx, ctx.admin).delete_workspace_api_key(workspaceId=WORKSPACE, keyName="boto-key")
    expect(answer["keyName"] == "boto-key", f"keyName {answer.get('keyName')!r}")
    expect(answer["workspaceId"] == WORKSPACE, f"workspaceId {answer.get('workspaceId')!r}")
    expect(answer["ResponseMetadata"]["HTTPStatusCode"] == 200, "not 200")
    expect("revokeTime" in ctx.get(token["id"]), "the key is not revoked")
    return "delete_workspace_api_key: 200 {keyName, workspaceId}, revoked"


def grafana_error(ctx: Context, jwt: str, workspace: str, key: str, code: str, status: int, typed: str) -> str:
    client = grafana(ctx, jwt)
    try:
        client.delete_workspace_api_key(workspaceId=workspace, keyName=key)
    except botocore.exceptions.ClientError as error:
        expect(error.response["Error"]["Code"] == code, f"Error.Code {error.response['Error']['Code']!r}, expected {code}")
        expect(
            error.response["ResponseMetadata"]["HTTPStatusCode"] == status,
            f"status {error.response['ResponseMetadata']['HTTPStatusCode']}, expected {status}",
        )
        modeled = getattr(client.exceptions, typed)
        expect(isinstance(error, modeled), f"raised {type(error).__name__}, expected client.exceptions.{typed}")
        expect(error.response["Error"].get("Message"), "no Error.Message")
        return f"ClientError {code} ({typed}) {status}: {error.response['Error']['Message']}"
    raise CheckFailed("no exception raised")


def grafana_not_found(ctx: Context) -> str:
    return grafana_error(ctx, ctx.admin, WORKSPACE, "nobody", "ResourceNotFoundException", 404, "ResourceNotFoundException")


def grafana_validation(ctx: Context) -> str:
    return grafana_error(ctx, ctx.admin, "g-not-hex", "boto-key", "ValidationException", 400, "ValidationException")


def grafana_permission(ctx: Context) -> str:
    ctx.create({"kind": "TOKEN_KIND_WORKSPACE_API_KEY", "name": "boto-denied", "workspaceId": WORKSPACE})
    return grafana_error(ctx, ctx.nobody, WORKSPACE, "boto-denied", "AccessDeniedException", 403, "AccessDeniedException")


CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("datadog success", datadog_success),
    ("datadog not found", datadog_not_found),
    ("datadog validation", datadog_validation),
    ("datadog permission", datadog_permission),
    ("boto3 grafana success", grafana_success),
    ("boto3 grafana not found", grafana_not_found),
    ("boto3 grafana validation", grafana_validation),
    ("boto3 grafana permission", grafana_permission),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-addr", required=True)
    parser.add_argument("--tokend", required=True, help="the tokend binary (for mint-jwt)")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    ctx = Context(args.http_addr, args.tokend, args.data_dir)
    passed, failed = 0, []
    for name, check in CHECKS:
        try:
            note = check(ctx)
        except Exception as error:  # noqa: BLE001 (report every check)
            failed.append(name)
            print(f"  FAIL  {name}: {error}")
            if not isinstance(error, CheckFailed):
                traceback.print_exc()
            continue
        passed += 1
        print(f"  ok    {name}: {note}")
    if failed:
        print(f"check_rest_sdks: {len(failed)} of {len(CHECKS)} checks FAILED: {', '.join(failed)}")
        return 1
    print(f"check_rest_sdks: {passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
