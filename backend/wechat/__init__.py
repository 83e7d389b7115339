"""The WeChat adapter: crypto and push parsing (wechatpy), the async API client, the stand-in."""
