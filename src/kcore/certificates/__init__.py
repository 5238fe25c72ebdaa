"""Certificate signing requests: parsing and checking them (request.py), deciding
which to approve (approver.py), signing them with a CA (signer.py). Pure functions:
no API calls, the clock passed in."""
