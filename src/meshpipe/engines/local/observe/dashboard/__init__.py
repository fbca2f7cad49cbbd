"""The local engine's web dashboard, served by each environment's daemon on 127.0.0.1.

``server`` (HTTP, access token, pages and the server-sent-event stream), ``live`` (what is sent to the
open pages, and when), ``views`` (the documents, pure), ``source`` (the daemon as their data source) and
``assets/`` (the pages' HTML, CSS and script: package data, nothing fetched from the internet).
"""
