"""An independent gRPC client of the chat services, on Python grpcio and a
client generated from proto/ by grpcio-tools (the test puts the generated
modules on sys.path). Prints one line per step; the Rust test asserts them.

Environment: AUTH_ADDR, MESSAGE_ADDR (host:port), SERVICE_TOKEN, and
ADMIN_TOKEN, the access token of an admin.
"""

import os
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chat.auth.v1 import auth_pb2, auth_pb2_grpc
from chat.message.v1 import admin_pb2, admin_pb2_grpc, message_pb2, message_pb2_grpc

service = [("x-service-token", os.environ["SERVICE_TOKEN"])]
auth_channel = grpc.insecure_channel(os.environ["AUTH_ADDR"])
message_channel = grpc.insecure_channel(os.environ["MESSAGE_ADDR"])

# Register through auth-service, with the service credential only.
auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
carol = auth.Register(
    auth_pb2.RegisterRequest(username="carol", password="correct horse"),
    metadata=service,
)
print("registered", carol.user.username, carol.user.role)

# Act as carol on message-service: the service credential and her identity.
as_carol = service + [
    ("x-user-id", carol.user.id),
    ("x-username", carol.user.username),
    ("x-display-name-bin", "Carol Ünicode".encode()),
]
messages = message_pb2_grpc.MessageServiceStub(message_channel)
room = messages.CreateRoom(
    message_pb2.CreateRoomRequest(name="from python", visibility=message_pb2.VISIBILITY_PUBLIC),
    metadata=as_carol,
)
print("created", room.name, message_pb2.Visibility.Name(room.visibility))
for text in ["hello", "from grpcio"]:
    sent = messages.SendMessage(
        message_pb2.SendMessageRequest(room=room.id, text=text, client_msg_id=str(uuid.uuid4())),
        metadata=as_carol,
    )
    print("sent", sent.message.seq, sent.message.text)
history = messages.History(message_pb2.HistoryRequest(room=room.id, limit=10), metadata=as_carol)
for m in history.messages:
    print("history", m.seq, m.sender_name, m.text)
print("has_more", history.has_more)

# The admin service wants an admin's access token besides the credential.
admin = admin_pb2_grpc.AdminServiceStub(message_channel)
try:
    admin.ListRooms(
        admin_pb2.ListRoomsRequest(),
        metadata=service + [("authorization", "Bearer " + carol.access_token)],
    )
    print("carol was served")
except grpc.RpcError as error:
    code = dict(error.trailing_metadata()).get("x-error-code")
    print("refused", error.code().name, code, error.details())
rooms = admin.ListRooms(
    admin_pb2.ListRoomsRequest(),
    metadata=service + [("authorization", "Bearer " + os.environ["ADMIN_TOKEN"])],
)
for summary in rooms.rooms:
    print("admin sees", summary.room.name, summary.member_count, summary.room.last_seq)

# Health and reflection (v1alpha, the one grpcio-reflection speaks) need no
# credential.
health = health_pb2_grpc.HealthStub(message_channel)
status = health.Check(health_pb2.HealthCheckRequest(service="chat.message.v1.AdminService"))
print("health", health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))
reflection = reflection_pb2_grpc.ServerReflectionStub(message_channel)
answer = next(
    reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
)
print("services", " ".join(sorted(s.name for s in answer.list_services_response.service)))
