from rest_framework import generics


class OrderListView(generics.GenericAPIView):
    pass
