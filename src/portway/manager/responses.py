"""The management API's JSON answers: every policy secret in them is masked as ``"***"``.

Masking where the JSON is rendered covers every read (APIs, policy entries, global policies,
revisions, exports, audit records, deployment history) at once; the cluster API, which hands
workers their signed revisions, does not use this class.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from portway.policies.secrets import mask_secrets


class MaskedJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return super().render(mask_secrets(content))
