"""Reading the gateway in XML with georeport (PyPI, Apache-2.0; not
written by this project), unchanged: the services, a definition, and a
request by id and by list.

Usage: georeport_reads.py ENDPOINT REQUEST_ID
Prints one JSON object of what the client parsed; the Rust test judges it.
"""
import json
import sys

import requests
from georeport.georeport import GeoReport

base, request_id = sys.argv[1], sys.argv[2]
client = GeoReport(base, jurisdiction="990101", output_format="xml")
seen = {}
services = client.get_service_list()
seen["service_codes"] = [s["service_code"] for s in services]
definition = client.get_service_definition("0201")
attributes = definition["attributes"]["attribute"]
seen["definition"] = {"service_code": definition["service_code"], "attribute_codes": [a["code"] for a in attributes]}
seen["request"] = client.get_service_request(request_id)
seen["requests"] = client.get_service_requests(service_request_id=request_id)
try:
    client.get_service_definition("9999")
    seen["unknown_service"] = "accepted"
except requests.HTTPError as error:
    seen["unknown_service"] = error.response.status_code
print(json.dumps(seen, ensure_ascii=False))
