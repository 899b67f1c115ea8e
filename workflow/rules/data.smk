# The data set's fixed splits, and the forget sets drawn from them.


rule prepare_dataset:
    input:
        unpack(get_split_file),
    output:
        splits=SPLITS,
    log:
        PATHS.log("prepare_dataset", SPLITS),
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        root=config["data"]["root"],
        download=config["data"]["download"],
        verify_checksums=config["data"]["verify_checksums"],
        resolution=config["data"]["resolution"],
        val_resolution=config["data"]["val_resolution"],
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        dataset=DATASET,
        code=get_code("prepare_dataset.py"),
    script:
        "../scripts/prepare_dataset.py"


rule make_forget_set:
    input:
        unpack(get_forget_set_input),
    output:
        indices=FORGET_SET,
    log:
        PATHS.log("make_forget_set", FORGET_SET),
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        entry=get_forget_set_entry,
        seed=get_forget_set_seed,
        n_train=DATA.n_train,
        content=get_forget_set_content,
        code=get_code("make_forget_set.py"),
    script:
        "../scripts/make_forget_set.py"
