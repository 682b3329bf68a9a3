"""A WSUS downstream server as the tests drive one: zeep, an independent SOAP client, builds every request from a
WSDL written from the MS-WSUSSS specification (tests/fixtures/wsusss/) and checks every answer against its types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport

FIXTURES = Path(__file__).parent.parent / "fixtures" / "wsusss"
SYNC_PATH = "/ServerSyncWebService/ServerSyncWebService.asmx"
AUTH_PATH = "/DssAuthWebService/DssAuthWebService.asmx"
SYNC_BINDING = "{http://www.microsoft.com/SoftwareDistribution}ServerSyncWebServiceSoap"
AUTH_BINDING = "{http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService}DssAuthWebServiceSoap"


class WsusDownstream:
    """What a WSUS downstream server does, one operation at a time, through zeep."""

    def __init__(self, url: str, token: str | None) -> None:
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        transport = Transport(session=self.session, timeout=30, operation_timeout=60)
        self.sync = zeep.Client(str(FIXTURES / "ServerSyncWebService.wsdl"), transport=transport).create_service(
            SYNC_BINDING, url + SYNC_PATH
        )
        self.auth = zeep.Client(str(FIXTURES / "DssAuthWebService.wsdl"), transport=transport).create_service(
            AUTH_BINDING, url + AUTH_PATH
        )
        self.cookie: Any = None

    def authenticate(self) -> Any:
        config = self.sync.GetAuthConfig()
        plug_in = config.AuthInfo.AuthPlugInInfo[0]
        assert (plug_in.PlugInID, plug_in.ServiceUrl) == ("DssTargeting", AUTH_PATH.lstrip("/"))
        authorization = self.auth.GetAuthorizationCookie(
            accountName="branch.example.test", accountGuid="3f2504e0-4f89-41d3-9a0c-0305e82c3301"
        )
        self.cookie = self.sync.GetCookie(
            authCookies={"AuthorizationCookie": [authorization]}, oldCookie=None, protocolVersion="1.20"
        )
        return self.cookie


def fault_code(raised: pytest.ExceptionInfo[zeep.exceptions.Fault]) -> str:
    detail = raised.value.detail
    assert detail is not None, "a fault of the protocol carries a detail"
    return str(detail.findtext("ErrorCode"))
