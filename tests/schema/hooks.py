"""Schemathesis hooks: how to send the two JWT media types authmd accepts (a provider's logout
token and security event token). The body is the compact JWT itself, sent as text; the
generator's strings are not valid JWTs, so authmd must refuse each with a 4xx."""

import schemathesis


class CompactJwt:
    def as_requests(self, context, value):
        return {"data": str(value).encode("utf-8", "surrogatepass")}

    def as_werkzeug(self, context, value):
        return {"data": str(value).encode("utf-8", "surrogatepass")}


for media_type in ("application/logout+jwt", "application/secevent+jwt"):
    schemathesis.serializer(media_type)(CompactJwt)
