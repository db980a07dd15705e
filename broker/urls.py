from django.urls import path

from broker import views

app_name = "broker"

urlpatterns = [
    # <agent>: the agent's Keyward id (UUID) or its platform id (agent_…).
    path("agents/<str:agent>/session", views.session, name="session"),
    path("tokens/<str:token_type>", views.single_use_token, name="single_use_token"),
    path("platform/token-refresh", views.token_refresh, name="token_refresh"),
    path("platform/conversation-initiation", views.conversation_initiation, name="conversation_initiation"),
]
