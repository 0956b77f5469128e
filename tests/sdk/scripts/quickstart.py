from autoglm_client import Client

with Client() as client:  # AUTOGLM_URL (and AUTOGLM_API_KEY) from the environment
    task = client.submit("glm-tiny", "generate", {"prompt": "Hello", "max_tokens": 8})
    tokens = list(client.tokens(task.task_id))
    done = client.wait(task.task_id, timeout=120)
    assert done.status == "succeeded" and "".join(tokens) == done.text, (tokens, done)
    print(done.model_dump_json())
