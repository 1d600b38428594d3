"""Real-time views: a customer's live session and a product's last hour, pushed by the stream
worker (`shopfeast stream`), their history from the clean events. Schemas come from the
declarations in pipelines/realtime.py."""

from data_sources import customer_session_push, product_realtime_push
from entities import ENTITIES

from featurestore.realtime import realtime_view
from pipelines.realtime import SOURCES

customer_session = realtime_view(SOURCES["customer_session"], ENTITIES, customer_session_push)
product_realtime = realtime_view(SOURCES["product_realtime"], ENTITIES, product_realtime_push)
